from community.cli import app

app()
