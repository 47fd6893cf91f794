"""VitalDB inputs: ``.vital`` recordings, the clinical table, and the synthetic recording writer."""
