"""The catalog: GPU products, clusters and templates, and choosing where an instance goes."""
