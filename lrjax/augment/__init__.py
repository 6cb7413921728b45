"""On-device augmentation with a continuous per-member strength (see ``policy``)."""

from lrjax.augment.policy import (
    OPS, Policy, augment_batch, drop_inactive, magnitudes, policy_for)

__all__ = ["OPS", "Policy", "augment_batch", "drop_inactive", "magnitudes", "policy_for"]
