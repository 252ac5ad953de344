"""Voting, always-valid Kaggle submission files and scoring (no torch).

    import submission
    sub = submission.build_submission(tasks, submission.rank_candidates(predictions))
    submission.write_submission("submission.json", sub, tasks)
"""

from .kaggle import build_submission, fallback_submission, load_submission, validate_submission, write_submission
from .score import score_submission
from .vote import Candidate, Prediction, rank_candidates

__all__ = ["Candidate", "Prediction", "build_submission", "fallback_submission", "load_submission",
           "rank_candidates", "score_submission", "validate_submission", "write_submission"]
