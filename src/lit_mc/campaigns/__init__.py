"""Campaigns: the long runs behind the shipped results, as resumable commands (one module a study)."""
