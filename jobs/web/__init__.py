"""The pages: views, forms and urls."""
