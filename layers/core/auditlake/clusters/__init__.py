"""Clusters that send audit events: the token registry and the webhook kubeconfig the API server reads."""
