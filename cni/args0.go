package main

import "os"

func osArgs0() string { return os.Args[0] }
