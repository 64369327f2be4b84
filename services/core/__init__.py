"""The domain (events, rules, listing state, views, digests) and the plumbing every service shares."""
