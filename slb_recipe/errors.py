"""The recipe's error for problems a user can fix."""


class RecipeError(RuntimeError):
    """A problem with the run's inputs that the user can fix; the message is one line."""
