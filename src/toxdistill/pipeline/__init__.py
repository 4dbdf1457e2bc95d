"""The orchestrators. ``toxdistill run``: the plan (``plan``), its stages (``stages``), what every step shares
(``context``) and the run's results (``results``); ``toxdistill evaluate``: ``external``."""
