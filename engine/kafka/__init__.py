"""Kafka edge."""
