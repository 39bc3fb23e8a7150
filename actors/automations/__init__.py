"""Dosing, temperature and LED automations and their base."""
