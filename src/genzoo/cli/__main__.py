from genzoo.cli.main import app

app()
