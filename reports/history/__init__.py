"""`bench history` rendered: the terminal table (`terminal`), the HTML page (`page`) and its charts (`chart`)."""
