"""Simulated GB/T 28181 devices."""
