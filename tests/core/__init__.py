"""Tests that need no torch: the analytic core, results, exports and the analytic CLI."""
