module github.com/roostnet/roost

go 1.26
