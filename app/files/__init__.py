"""Project files: uploads on disk, an optional OpenAI Files mirror, extracted text for chat."""
