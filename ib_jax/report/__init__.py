"""Reporting: statistics with intervals (:mod:`stats`), summary tables (:mod:`summary`), plots
(:mod:`plots`) and the claims report's verdicts (:mod:`claims`). Reads records, never writes them
except the files it is asked for."""
