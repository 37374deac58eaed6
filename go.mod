module github.com/phoenix-hv/phoenix

go 1.26
