"""Model families by name, for training configurations: one constructor per family
returning (module, metadata) with random weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from localcond.errors import LocalcondError
from localcond.model.contract import ModelMetadata


def _message_passing(species: Sequence[str], charges: Sequence[float], **options):
    from localcond.model.message_passing import make_untrained_model

    return make_untrained_model(species, charges, **options)


def _power_spectrum(species: Sequence[str], charges: Sequence[float], **options):
    from localcond.model.power_spectrum import make_power_spectrum_model

    return make_power_spectrum_model(species, charges, **options)


def _two_scale(species: Sequence[str], charges: Sequence[float], **options):
    from localcond.model.two_scale import make_two_scale_model

    return make_two_scale_model(species, charges, **options)


FAMILIES: dict[str, Callable[..., tuple[torch.nn.Module, ModelMetadata]]] = {
    "message-passing": _message_passing,
    "power-spectrum": _power_spectrum,
    "two-scale": _two_scale,
}


def make_model(family: str, species: Sequence[str], charges: Sequence[float],
               **options) -> tuple[torch.nn.Module, ModelMetadata]:
    if family not in FAMILIES:
        raise LocalcondError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    try:
        return FAMILIES[family](species, charges, **options)
    except TypeError as exc:
        raise LocalcondError(f"model family {family!r}: bad options {options} ({exc})") from None
