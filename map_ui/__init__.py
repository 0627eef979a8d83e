"""Folium page builders."""
