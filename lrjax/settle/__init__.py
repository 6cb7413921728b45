"""Settling an experiment's primary questions: proposal rules and waves of extensions."""

from lrjax.settle.rules import (Addition, Open, SettleSettings, cells_of, is_open,
                                propose)
from lrjax.settle.waves import settle_run

__all__ = ["Addition", "Open", "SettleSettings", "cells_of", "is_open", "propose",
           "settle_run"]
