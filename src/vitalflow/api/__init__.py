"""The web app and REST API: start and watch jobs, look at datasets, models and predictions."""
