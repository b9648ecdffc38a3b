"""Graded early-warning rules (levels I-IV) and their validation."""
