"""SageMaker: the job environment inside a job, and launching jobs from outside."""
