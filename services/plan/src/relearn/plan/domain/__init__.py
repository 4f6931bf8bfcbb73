"""The plan's pure rules: catalogue, patterns, stages, evidence, progression, drafting and editing."""
