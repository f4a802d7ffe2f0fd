"""Face-ID on ResNet50 embeddings: gallery files, enrolment thresholds, open-set evaluation.

The modules here are device side (Python 3.8, numpy only) except where a docstring says
otherwise; matplotlib is imported only by :mod:`.plots`, and only when plots are asked for.
"""
