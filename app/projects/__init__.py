"""Projects (agents): the dashboard, CRUD pages and the JSON API over one service module."""
