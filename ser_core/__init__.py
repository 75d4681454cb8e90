"""ser_core: the library behind the SER batch pipelines.

Records and corpus readers (list, never decode), audio decoding, feature extraction,
speaker-independent splits, the ResLSTM-SA model, training, evaluation and the helpers
that the Beam pipelines in ``pipelines/`` are built from.

``from ser_core import Labeller`` (:class:`ser_core.inference.labeller.Labeller`) labels
recordings from Python; it is imported on first use, so ``import ser_core`` (and
``ser --help``) stays light.
"""

from typing import Any

from ser_core.logs import silence_cloud_client_notes

__all__ = ["Labeller", "__version__"]

__version__ = "0.1.0"

# Before any module of the package imports apache_beam (see ser_core/logs.py).
silence_cloud_client_notes()


def __getattr__(name: str) -> Any:
    """Lazy public names (PEP 562): the labelling API pulls in numpy, the front-end and a
    model engine, which a command that does not label should not pay for."""
    if name == "Labeller":
        from ser_core.inference.labeller import Labeller

        return Labeller
    raise AttributeError(f"module 'ser_core' has no attribute {name!r}")
