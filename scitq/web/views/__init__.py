"""The dashboard's blueprints, one per area: overview, batches, tasks, workers, cloud."""
