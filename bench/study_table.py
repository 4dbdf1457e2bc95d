"""The README's study tables: ``python bench/study_table.py RUN [RUN ...] [--pair MODEL_A MODEL_B] [-o table.md]``.

The code is ``toxdistill.evaluation.study`` (the tests import it there); this file is its command line.
"""

from toxdistill.evaluation.study import main

if __name__ == "__main__":
    main()
