"""Self-supervised losses, one per file, each citing its paper.

All losses take (B, D) embeddings, compute in float32 even under autocast, and -- where they
need the global batch -- gather it from every process with gradients that stay correct under
DDP (see :mod:`multissl.distributed`).
"""
from multissl.losses.barlow_twins import barlow_twins_loss
from multissl.losses.hierarchical_contrastive import hierarchical_contrastive_loss
from multissl.losses.info_nce import info_nce_loss
from multissl.losses.negative_cosine import negative_cosine_loss
from multissl.losses.ntxent import nt_xent_loss
from multissl.losses.subseries_triplet import subseries_triplet_loss
from multissl.losses.vibcreg import normalised_covariance_penalty, vibcreg_loss, vibcreg_terms
from multissl.losses.vicreg import RegularisationTerms, variance_hinge, vicreg_loss, vicreg_terms

__all__ = [
    "RegularisationTerms",
    "barlow_twins_loss",
    "hierarchical_contrastive_loss",
    "info_nce_loss",
    "negative_cosine_loss",
    "normalised_covariance_penalty",
    "nt_xent_loss",
    "subseries_triplet_loss",
    "variance_hinge",
    "vibcreg_loss",
    "vibcreg_terms",
    "vicreg_loss",
    "vicreg_terms",
]
