// Command web is the monorepo example's web service.
package main

import (
	"fmt"

	"example.com/monorepo/libs/shared"
)

func main() { fmt.Println(shared.Greeting("web")) }
