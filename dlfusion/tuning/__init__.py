"""Tuning: kernel measurements, fusion/core strategies and plans."""
