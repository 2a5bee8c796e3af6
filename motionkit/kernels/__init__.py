"""Attention kernels and the backend switch. Import-light: nothing here imports triton until asked."""
