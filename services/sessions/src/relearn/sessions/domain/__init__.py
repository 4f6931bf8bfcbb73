"""Pure rules of the session log: codes, the plan view, session states and summaries, adherence."""
