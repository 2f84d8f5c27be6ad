"""The worker tests' helpers live in tests/workers/worker_kit.py."""
