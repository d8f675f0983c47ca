"""Spine age from spine radiographs and DXA VFA images, and the epidemiology around it."""

__version__ = "0.1.0"
