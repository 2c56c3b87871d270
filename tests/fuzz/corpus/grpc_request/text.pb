Hello world*
