"""Command-line argument parser."""
