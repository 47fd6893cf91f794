"""VitalDB inputs: reading ``.vital`` recordings, the clinical table, and writing ``.vital`` files.

The synthetic recordings written with `vitalflow.vital.write` are made in `vitalflow.synth`;
nothing here imports it.
"""
