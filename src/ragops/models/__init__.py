"""The MLflow pyfunc that packages chain + config + index snapshot, and the registry around it."""
