"""Cross-service messaging: Celery app factory, versioned contracts, transactional outbox and inbox."""
