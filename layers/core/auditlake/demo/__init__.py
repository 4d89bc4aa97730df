"""The demo: synthetic traffic with planted incidents, the replay client, and the run that ties them together."""
