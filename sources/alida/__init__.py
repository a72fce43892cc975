"""Alida (Insight Communities): member events polled from the Alida API into ``activity.raw``."""
