JD

system	Be brief.

userHibob"{"enable_thinking": false}