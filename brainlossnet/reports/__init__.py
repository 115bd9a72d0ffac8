"""Quality-control reports: the per-pair HTML report, the group HTML report, their figures.

Reports read results and draw them; they change no number. They depend on the numerics
(Jacobian, agreement statistics); nothing in the pipeline imports them.
"""
