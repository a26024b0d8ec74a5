"""Federated learning: offline data, small models, local training and aggregation."""
