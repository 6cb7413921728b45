"""On-device augmentation with a continuous per-member strength (see ``policy``)."""

from lrjax.augment.policy import (
    OP_REGISTRY, OPS, STAGES, Op, Policy, Stage, augment_batch, drop_inactive, magnitudes,
    policy_for, policy_for_dataset)

__all__ = ["OP_REGISTRY", "OPS", "STAGES", "Op", "Policy", "Stage", "augment_batch",
           "drop_inactive", "magnitudes", "policy_for", "policy_for_dataset"]
