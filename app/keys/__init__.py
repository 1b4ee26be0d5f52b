"""API keys: long-lived bearer credentials for apps (personal or per project), named, shown
once, stored as digests, scoped, expiring, revocable, with a rate and a monthly token budget.
Below auth (whose request loader checks them) and above projects."""
