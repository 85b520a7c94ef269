"""Adapter4Rec: transferable sequential recommendation from item content, with adapter-based transfer."""
