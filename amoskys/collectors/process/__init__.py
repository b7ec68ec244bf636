"""The process collector: an inventory snapshot on an interval, and exec/exit as they happen."""
