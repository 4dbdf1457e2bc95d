"""`toxdistill run`: the plan (``plan``), its stages (``stages``) and the run's results (``results``)."""
